from tailstudy.cli import main

raise SystemExit(main())
