"""How the package turns Django settings into the core's."""
from openedx_event_bus.bus import with_kafka_defaults


def test_kafka_sends_do_not_linger_unless_the_settings_say_so():
    assert with_kafka_defaults({"EVENT_BUS_BACKEND": "kafka"})["EVENT_BUS_KAFKA_CLIENT_CONFIG"] == {"linger.ms": 0}
    given = {"EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_KAFKA_CLIENT_CONFIG": '{"acks": "all"}'}
    assert with_kafka_defaults(given)["EVENT_BUS_KAFKA_CLIENT_CONFIG"] == {"acks": "all", "linger.ms": 0}
    own = {"EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_KAFKA_CLIENT_CONFIG": {"linger.ms": 20}}
    assert with_kafka_defaults(own) == own
    # Not a table: left as it is, for the core to report with the key.
    bad = {"EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_KAFKA_CLIENT_CONFIG": "[1]"}
    assert with_kafka_defaults(bad) == bad
    assert with_kafka_defaults({"EVENT_BUS_BACKEND": "redis"}) == {"EVENT_BUS_BACKEND": "redis"}
