#!/usr/bin/env bash
# Writes server.properties from the KAFKA_* variables (the official image's rule: drop
# KAFKA_, lower case, "_" -> ".", "__" -> "_", "___" -> "-"; the JVM's own variables are
# not properties), formats the storage once, then runs the broker in the foreground.
set -euo pipefail
config=/opt/kafka/config/server.properties
not_properties=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JMX_OPTS KAFKA_JVM_PERFORMANCE_OPTS \
KAFKA_GC_LOG_OPTS KAFKA_LOG4J_OPTS KAFKA_JMX_PORT KAFKA_JMX_HOSTNAME KAFKA_VERSION "
: > "$config"
while IFS= read -r name; do
    [[ $not_properties == *" $name "* ]] && continue
    key=${name#KAFKA_}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    key=${key//@/_}
    printf '%s=%s\n' "${key,,}" "${!name}" >> "$config"
done < <(compgen -e | grep '^KAFKA_' | sort)

log_dirs=$(sed -n 's/^log\.dirs=//p' "$config")
log_dirs=${log_dirs:-/tmp/kraft-combined-logs}
if [ ! -f "${log_dirs%%,*}/meta.properties" ]; then
    cluster_id=${CLUSTER_ID:-$(kafka-run-class.sh kafka.tools.StorageTool random-uuid | tail -n 1)}
    kafka-run-class.sh kafka.tools.StorageTool format -t "$cluster_id" -c "$config" >/dev/null
    echo "formatted $log_dirs (cluster $cluster_id)"
fi
exec kafka-run-class.sh -Dkafka.logs.dir=/tmp ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 ${KAFKA_OPTS:-} kafka.Kafka "$config"
