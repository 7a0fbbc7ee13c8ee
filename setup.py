"""Builds the optional C kernels; everything else is in pyproject.toml.

Each kernel is a plain C shared library loaded with ctypes: the one-pass
gradient (lepton_hpc/models/fused.py) and implicit-feedback ALS
(lepton_hpc/models/mf_implicit_c.py). If no C compiler is available the build
goes on without them and the numpy/BLAS paths are used.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler: fall back to numpy
            print(f"warning: the one-pass C kernel was not built ({exc}); using numpy")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: the one-pass C kernel was not built ({exc}); using numpy")

    def get_export_symbols(self, ext):
        return []  # a ctypes library, not a Python module: no PyInit_ symbol


setup(
    ext_modules=[Extension("lepton_hpc._ext.fused", ["lepton_hpc/_ext/fused.c"],
                           extra_compile_args=["-O3", "-fno-fast-math", "-ffp-contract=off"]),
                 Extension("lepton_hpc._ext.implicit", ["lepton_hpc/_ext/implicit.c"],
                           extra_compile_args=["-O3", "-fno-fast-math", "-ffp-contract=off"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
