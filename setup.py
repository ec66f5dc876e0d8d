"""Build hook: ship the top-level ``mappings/`` folder inside the wheel.

Everything else about the build is declared in ``pyproject.toml``. ``mappings/`` stays at the
top of the repository because it is what admins copy and deploy (``sf project deploy``), so
the build copies it to ``connector/bundled/mappings``, where :mod:`connector.bundled` finds it
in an installed package. setuptools' ``package-dir`` cannot express this without a Python
package in ``mappings/``, which would confuse the admins who deploy that folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "mappings"


class BuildPyWithMappings(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads the checkout's mappings/ directly
        target = Path(self.build_lib) / "connector" / "bundled" / "mappings"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(SOURCE, target)


setup(cmdclass={"build_py": BuildPyWithMappings})
