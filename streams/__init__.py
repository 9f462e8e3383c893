"""Kafka, shared by the processes: client options and topics, the wire format, replay."""
