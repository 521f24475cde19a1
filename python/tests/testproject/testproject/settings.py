"""
Settings of the test service. The event bus settings come from the
environment variable ``TEST_EVENT_BUS_SETTINGS`` (a JSON object of Django
setting names and values), so each test runs services with the settings it
needs: this package's producer and consumer, or the Python peers'.
"""
import json
import os

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "openedx_events",
    "openedx_event_bus",
    "testapp",
]
if os.environ.get("TEST_DATABASE") == "postgres":
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "test", "USER": "postgres",
                             "HOST": "127.0.0.1", "PORT": 5432, "CONN_MAX_AGE": None}}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                             "NAME": os.environ.get("TEST_SQLITE_DB", ":memory:")}}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
globals().update(json.loads(os.environ.get("TEST_EVENT_BUS_SETTINGS", "{}")))
