from tailstudy.cli import main

# The guard matters: img2dataset's workers are started with "spawn", which re-imports this module.
if __name__ == "__main__":
    raise SystemExit(main())
