"""Trip producers written the way a team would write them: confluent-kafka's own
SchemaRegistryClient and AvroSerializer, pointed at a schema registry (weir's).

  produce.py create-topic BROKERS TOPIC PARTITIONS
  produce.py produce BROKERS REGISTRY TOPIC EVENTS SEED OUT.json
  produce.py retype-fare REGISTRY SUBJECT

`produce` registers trip schemas v1 and v2 under TOPIC-value through the serializers,
tries to register an incompatible v3 and records the registry's answer, then writes
EVENTS trips from a v1 and a v2 producer at the same time (two threads), plus two
broken records (an unknown schema id, a truncated body). OUT.json gets what the sink
must hold, computed here: per (window start, city), the trips, the fare sum as the v2
reader sees it (a v1 fare is a float, widened), and the tips' sum and count.
"""

import json
import random
import struct
import sys
import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

CITIES = ["Oslo", "Lima", "Pune", "Quito", "Accra"]
BASE_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z
SPREAD_MS = 8 * 60_000  # within the 10-minute lateness: nothing is late


def schema(name):
    with open(f"{sys.path[0]}/../../examples/rides/schemas/{name}") as f:
        return f.read()


V3 = json.loads(schema("trip-v2.avsc"))
V3["fields"].append({"name": "surge", "type": "double"})


def create_topic(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, int(partitions), 1)]).values():
        future.result(30)


def trips(seed, version, count):
    rng = random.Random(seed * 10 + version)
    for i in range(count):
        trip = {
            "trip_id": f"v{version}-{seed}-{i}",
            "city": rng.choice(CITIES),
            "fare": round(rng.uniform(3, 80), 2),
            "status": rng.choice(["completed", "cancelled"]),
            "event_time": BASE_MS + rng.randrange(SPREAD_MS),
        }
        km = round(rng.uniform(0.5, 30), 3)
        if version == 1:
            trip["distance_km"] = km
        else:
            trip["distance"] = km
            trip["tip"] = round(rng.uniform(0, 10), 2) if rng.random() < 0.6 else None
        yield trip


def produce(brokers, registry, topic, events, seed, out):
    events, seed = int(events), int(seed)
    client = SchemaRegistryClient({"url": registry})
    serializers = {v: AvroSerializer(client, schema(f"trip-v{v}.avsc")) for v in (1, 2)}
    key = StringSerializer()
    value_context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
    windows = {}
    lock = threading.Lock()
    # Registered through the serializers, v1 first, as the first producer of each would.
    first = {v: next(trips(seed + 1000, v, 1)) for v in (1, 2)}
    framed = {v: serializers[v](first[v], value_context) for v in (1, 2)}
    ids = {v: struct.unpack(">I", framed[v][1:5])[0] for v in (1, 2)}
    try:
        client.register_schema(f"{topic}-value", Schema(json.dumps(V3), "AVRO"))
        refused = {"status": None, "message": "registered"}
    except SchemaRegistryError as e:
        refused = {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}

    def count(trip, version):
        fare = struct.unpack("<f", struct.pack("<f", trip["fare"]))[0] if version == 1 else trip["fare"]
        start = trip["event_time"] // 60_000 * 60_000
        tip = trip.get("tip")
        with lock:
            w = windows.setdefault(f"{start} {trip['city']}", [0, 0.0, 0.0, 0])
            w[0] += 1
            w[1] += fare
            if tip is not None:
                w[2] += tip
                w[3] += 1

    def write(version, count_of):
        for trip in trips(seed, version, count_of):
            value = serializers[version](trip, value_context)
            producer.produce(topic, key=key(trip["trip_id"]), value=value)
            producer.poll(0)
            count(trip, version)

    for v in (1, 2):
        producer.produce(topic, key=key(first[v]["trip_id"]), value=framed[v])
        count(first[v], v)
    threads = [threading.Thread(target=write, args=(v, events // 2 - 1)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    good = framed[2]
    producer.produce(topic, value=b"\x00" + struct.pack(">I", 999) + good[5:])
    producer.produce(topic, value=good[:-4])
    left = producer.flush(60)
    assert left == 0, f"{left} records not delivered"
    total = 2 + 2 * (events // 2 - 1) + 2
    with open(out, "w") as f:
        json.dump({"records": total, "ids": ids, "refused": refused, "windows": windows}, f)


def retype_fare(registry, subject):
    """Sets the subject's level to NONE and registers a schema whose fare is a string: a
    version the v2 reader cannot read."""
    client = SchemaRegistryClient({"url": registry})
    answer = client.set_compatibility(subject, "NONE")
    assert answer == {"compatibility": "NONE"}, answer
    assert client.get_compatibility(subject) == "NONE"
    v4 = json.loads(schema("trip-v2.avsc"))
    next(f for f in v4["fields"] if f["name"] == "fare")["type"] = "string"
    client.register_schema(subject, Schema(json.dumps(v4), "AVRO"))
    latest = client.get_latest_version(subject)
    assert latest.version == 3, latest


if __name__ == "__main__":
    {"create-topic": create_topic, "produce": produce, "retype-fare": retype_fare}[sys.argv[1]](*sys.argv[2:])
