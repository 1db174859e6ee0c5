"""The names of the .tflite formats, and the file every ratio is measured against.

Written once here, without TensorFlow, so that flag checks (pipeline/config.py) and reports
read them before anything heavy loads.
"""

FORMATS = ("float32", "float16", "dynamic_int8", "int8")
REFERENCE = "baseline_float32"  # Every size and speed ratio is measured against this file.
