"""The bench service's app: a receiver that counts the enrollments the
event bus delivers (see receivers.py)."""
