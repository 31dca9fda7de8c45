"""The one error type users see: a single line naming the file, key or value at fault."""


class LadderlabError(ValueError):
    """Bad input (file, column, key, value). The CLI prints it as one line and exits with code 2."""
