"""Ship the grammar, the standard library and the docs (kept at the repository root) inside
the wheel."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        data = Path(self.build_lib) / "lossdsl" / "_data"
        for folder in ("grammar", "specs", "docs"):
            target = data / folder
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / folder, target)


setup(cmdclass={"build_py": BuildWithData})
