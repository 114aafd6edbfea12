"""slmlib: the small helper library behind the SLM Course.

Train five small GPT-style models on a CPU, one per level of data, and watch
overfitting appear with little data and vanish as the data grows.
"""
__version__ = "0.1.0"

# The course's Jupyter kernel, registered inside the venv by setup_course.py (which cannot import slmlib
# before it is installed, so it repeats the name; tests/test_setup.py checks that it and the Makefile agree).
KERNEL_NAME = "slm-course"
KERNEL_DISPLAY_NAME = "Python 3 (SLM Course)"
