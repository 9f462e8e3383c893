#!/usr/bin/env bash
# Runs a Kafka class with every jar of /opt/kafka/libs, as the release's script does.
exec java -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml \
    -cp "/opt/kafka/libs/*" "$@"
