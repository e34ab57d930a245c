"""``python -m rlhf_core.notebook.exercises student|list ...``: the student-copy command line, ``student_copy.main``."""

import sys

from .student_copy import main

if __name__ == "__main__":
    sys.exit(main())
