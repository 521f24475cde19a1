#!/usr/bin/env python
"""manage.py of the bench service (see django_settings.py)."""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
