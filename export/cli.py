"""absl command lines that fail in one line: `error: <what>`, exit status 2, no usage dump."""

import os
import sys
from typing import List, Sequence

from absl import app
from absl import flags
from absl.flags import _helpers as helpers


def fail(message: str, status: int = 2) -> None:
  """Prints one error line and exits: status 2 for bad input, 1 for a run that failed."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(status)


def short_names(paths: Sequence[str]) -> List[str]:
  """Names for FILE... arguments in tables: the file name without its extension, or the path
  without it where two file names clash."""
  base = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  return base if len(set(base)) == len(base) else [os.path.splitext(p)[0] for p in paths]


def reference_name(reference, paths: Sequence[str], names: Sequence[str]) -> str:
  """The name of --reference (a path or a name; default: the first file), or one error line."""
  ref = reference or paths[0]
  norm = [os.path.normpath(p) for p in paths]
  if ref in names:
    return ref
  if os.path.normpath(ref) in norm:
    return names[norm.index(os.path.normpath(ref))]
  fail(f"--reference={ref}: not among the files given")


def parse_flags(argv):
  """absl's parser (pass as app.run's flags_parser); a bad flag becomes one `error:` line."""
  try:
    return flags.FLAGS(argv)
  except flags.CantOpenFlagFileError as e:
    fail("--flagfile: " + " ".join(str(e).replace("ERROR::", "").split()))
  except flags.Error as e:
    fail(" ".join(str(e).split()))


def flag_help(flag, prefix: str = "  ") -> str:
  """One flag as absl's --help writes it: name, help, default, syntax."""
  text = (f"--[no]{flag.name}: " if flag.boolean else f"--{flag.name}: ") + (flag.help or "")
  out = [helpers.text_wrap(text, indent=prefix + "  ", firstline_indent=prefix)]
  if flag.default_as_str:
    out.append(helpers.text_wrap(f"(default: {flag.default_as_str})", indent=prefix + "  "))
  if flag.parser.syntactic_help:
    out.append(helpers.text_wrap(f"({flag.parser.syntactic_help})", indent=prefix + "  "))
  return "\n".join(out)


def help_text(module, shared=(), topics=()) -> str:
  """--help: the command's docstring, its own flags, then each topic module's flags under the
  module's TITLE, in the order they are defined there (most used first), then `shared`."""
  out = [(module.__doc__ or "").strip(), ""]
  own = flags.FLAGS.get_flags_for_module(module)
  if own:
    out += ["Flags of this command:"] + [flag_help(f) for f in own] + [""]
  for topic in topics:
    out += [f"{topic.TITLE}:"] + [flag_help(f) for f in flags.FLAGS.get_flags_for_module(topic)]
    out.append("")
  for name in shared:
    f = flags.FLAGS[name]
    default = "the command's own" if f.default is None else repr(f.default)
    out.append(f"  --{name}: {f.help}\n    (default: {default})")
  return "\n".join(out).rstrip() + "\n"


def command_environment() -> None:
  """What every command of this project runs with, set before TensorFlow loads: tf.keras is
  tf_keras (TF-MOT needs Keras 2; this also spares importing Keras 3), and TensorFlow's C++
  INFO lines stay off the console. A command's own process only: the Python API
  (pipeline/api.py) leaves the caller's environment as it was."""
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main, module_name: str, shared=(), topics=()) -> None:
  """app.run with one-line flag errors, in command_environment(). --help lists the flags
  defined in `module_name`, those of each module in `topics` (grouped under its TITLE), and
  the flags named in `shared` (from export/shared_flags.py) that this command uses.

  absl's own --help lists the flags of the __main__ module, which for a console script is
  the generated wrapper, with none of ours.
  """
  command_environment()
  if any(a in ("-h", "--help", "--helpshort") for a in sys.argv[1:]):
    sys.stdout.write(help_text(sys.modules[module_name], shared, topics))
    sys.exit(0)
  app.run(main, flags_parser=parse_flags)
