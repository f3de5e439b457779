"""Run Lifestats: ``python main.py [flags]`` (the same program as the ``lifestats`` command)."""

from lifestats._entry import main

if __name__ == "__main__":
    raise SystemExit(main())
