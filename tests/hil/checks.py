"""The tally the HIL host checkers share: one line per check, a summary, the exit status."""
import sys


class Checks:
    """`check(ok, what)` prints ok/FAIL and counts; `finish()` prints `<name>: N passed, M failed`
    and exits 1 if anything failed."""

    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, 0

    def check(self, ok, what):
        self.passed, self.failed = self.passed + bool(ok), self.failed + (not ok)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        return ok

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
