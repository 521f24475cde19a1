"""
The Django work cycle, run by the core's consume loop before each message,
as Django does before each request: a database connection the server
closed is replaced, connections past their ``CONN_MAX_AGE`` are closed,
and edx-django-utils' ``RequestCache`` is cleared when it is installed.
"""
import logging

logger = logging.getLogger(__name__)


def prepare_for_new_work_cycle():
    """Prepare this thread for the next message."""
    from django.db import close_old_connections, connections  # pylint: disable=import-outside-toplevel

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.is_usable():
            logger.warning("Database connection %s is not usable; it is replaced before the next message", conn.alias)
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                conn.connection = None
    close_old_connections()
    try:
        from edx_django_utils.cache import RequestCache  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    RequestCache.clear_all_namespaces()
