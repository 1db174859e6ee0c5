"""absl command lines that fail in one line: `error: <what>`, exit status 2, no usage dump."""

import sys

from absl import flags


def fail(message: str) -> None:
  """Prints one error line and exits with status 2."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(2)


def parse_flags(argv):
  """absl's parser (pass as app.run's flags_parser); a bad flag becomes one `error:` line."""
  try:
    return flags.FLAGS(argv)
  except flags.CantOpenFlagFileError as e:
    fail("--flagfile: " + " ".join(str(e).replace("ERROR::", "").split()))
  except flags.Error as e:
    fail(" ".join(str(e).split()))
