"""Export and timing: .tflite formats, accuracy gates, benchmark, ARM check.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

from pipeline import config as config_lib

TITLE = 'Export and timing: .tflite formats, accuracy gates, benchmark, ARM check'

FORMATS = flags.DEFINE_list("export_formats", "float32,int8", "TFLite formats for the pruned "
                            f"model, from: {', '.join(config_lib.EXPORT_FORMATS)}. Sparse models "
                            "get a sparse-encoded file per format too.")
INT8_IO = flags.DEFINE_bool("int8_io", False, "int8 export: make inputs and outputs int8 too.")
INT8_CHANGE = flags.DEFINE_float("max_int8_accuracy_change", 1.0, "Largest change in test "
                                 "accuracy (points, either way) allowed between a dynamic_int8 "
                                 "or int8 file and its Keras model; outside it the run fails.")
F16_CHANGE = flags.DEFINE_float("max_float16_accuracy_change", 0.2, "The same bound for float16 "
                                "files (float32 files must agree with Keras on >= 99.9% of "
                                "test images, outputs within 1e-4).")
RUNS = flags.DEFINE_integer("benchmark_runs", 5000, "Timed invokes per file, in 100 interleaved "
                            "rounds; a speed-up is the median over rounds of the reference's "
                            "round median over the file's (a 100 us model: 0.5 s a file).")
WARMUP = flags.DEFINE_integer("benchmark_warmup_runs", 20, "Untimed invokes before timing.")
ARM = flags.DEFINE_bool("arm_check", False, "Also run every exported file on the ARM build of "
                        "LiteRT, emulated here (qemu-user; set up on first use, `make arm`): "
                        "does XNNPACK prepare it on arm64, its outputs against x86's, and its "
                        "emulated speed-up (an indication, not a phone latency).")
ARM_EXAMPLES = flags.DEFINE_integer("arm_examples", 20, "--arm_check: test images compared "
                                    "against x86, one invoke each (emulation is ~300x slower).")
