#!/usr/bin/env bash
# Local single-node Kafka 4 (KRaft, broker + controller in one JVM) for
# development and the integration tests. No Docker needed: the broker jars are
# fetched once with Maven (see pom.xml) into a git-ignored cache.
#
#   kafka.sh start    start the broker (no-op if it already runs); the last
#                     line on stdout is the bootstrap address, e.g. 127.0.0.1:9092
#   kafka.sh stop     stop the broker this script started (by its pid file)
#   kafka.sh status   print "running" (exit 0) or "stopped" (exit 3)
#
# Environment:
#   KAFKA_PORT               client port (default 9092)
#   KAFKA_CONTROLLER_PORT    KRaft controller port (default KAFKA_PORT+1)
#   TACTFUL_KAFKA_HOME       cache for jars and broker data (default: .kafka next to this script)
#   KAFKA_HEAP_OPTS          JVM heap options (default: -Xms128m -Xmx512m)
#   KAFKA_START_TIMEOUT      seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT       seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_SECURITY           plaintext (default) or sasl_ssl: the client port speaks
#                            SASL_SSL with SCRAM-SHA-512, under TLS certificates made
#                            with openssl at the first start (CA in RUN_DIR/tls/ca.pem)
#   KAFKA_SASL_USERNAME      sasl_ssl: the client user (default tactful)
#   KAFKA_SASL_PASSWORD      sasl_ssl: its password (default tactful-local-secret); the
#                            users are written when the storage is formatted (first start)
#
# Every client port gets its own run directory (config, data, logs, pid file),
# so brokers on different ports can run side by side; a sasl_ssl broker's is
# run-PORT-sasl_ssl.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST=127.0.0.1
# Fixed KRaft cluster id (base64 of 16 bytes); each run directory is its own cluster.
CLUSTER_ID=dGFjdGZ1bC1sb2NhbGRldg

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_SECURITY=${KAFKA_SECURITY:-plaintext}
KAFKA_SASL_USERNAME=${KAFKA_SASL_USERNAME:-tactful}
KAFKA_SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-tactful-local-secret}
CACHE_DIR=${TACTFUL_KAFKA_HOME:-$SCRIPT_DIR/.kafka}

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
    printf 'kafka.sh: error: %s\n' "$*" >&2
    exit 1
}

is_port_number() { [[ $1 =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
is_port_number "$KAFKA_PORT" || die "KAFKA_PORT must be a TCP port number, got '$KAFKA_PORT'"
KAFKA_PORT=$((10#$KAFKA_PORT))
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
is_port_number "$KAFKA_CONTROLLER_PORT" ||
    die "KAFKA_CONTROLLER_PORT must be a TCP port number, got '$KAFKA_CONTROLLER_PORT'"
KAFKA_CONTROLLER_PORT=$((10#$KAFKA_CONTROLLER_PORT))
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] ||
    die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $KAFKA_PORT)"
case $KAFKA_SECURITY in
plaintext | sasl_ssl) ;;
*) die "KAFKA_SECURITY must be plaintext or sasl_ssl, got '$KAFKA_SECURITY'" ;;
esac
[[ $KAFKA_SASL_USERNAME =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "KAFKA_SASL_USERNAME must be letters, digits, '.', '_' or '-'"
[[ $KAFKA_SASL_PASSWORD =~ ^[A-Za-z0-9._-]{8,}$ ]] ||
    die "KAFKA_SASL_PASSWORD must be at least 8 letters, digits, '.', '_' or '-'"

mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
LIBS_DIR=$CACHE_DIR/libs
LIBS_STAMP=$LIBS_DIR/.fetched
RUN_DIR=$CACHE_DIR/run-$KAFKA_PORT
[[ $KAFKA_SECURITY == plaintext ]] || RUN_DIR=$RUN_DIR-$KAFKA_SECURITY
TLS_DIR=$RUN_DIR/tls
# The broker's own SCRAM user (inter-broker traffic on the SASL_SSL listener).
BROKER_USER=broker
BROKER_PASSWORD=tactful-local-broker
CONFIG=$RUN_DIR/server.properties
LOG4J_CONFIG=$RUN_DIR/log4j2.properties
DATA_DIR=$RUN_DIR/data
LOG_DIR=$RUN_DIR/logs
PID_FILE=$RUN_DIR/kafka.pid
ADDRESS=$HOST:$KAFKA_PORT

usage() {
    echo "usage: kafka.sh start|stop|status" >&2
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found on PATH; $2"
}

# Serialise start/stop of one broker (and the shared jar download) between
# concurrent callers, where flock(1) is available.
lock() { # lock <file> <fd>
    command -v flock >/dev/null 2>&1 || return 0
    eval "exec $2>>\"\$1\""
    flock "$2"
}

# --- process bookkeeping ----------------------------------------------------

# True if $1 is a live (non-zombie) process that is the broker of this run dir.
is_our_broker() {
    local pid=$1 args stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [[ $stat != Z* ]] || return 1
    args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
    [[ $args == *kafka.Kafka* && $args == *"$CONFIG"* ]]
}

# Prints the pid of the running broker, or fails.
running_pid() {
    local pid
    [[ -f $PID_FILE ]] || return 1
    pid=$(<"$PID_FILE") || return 1
    pid=${pid//[[:space:]]/}
    is_our_broker "$pid" || return 1
    printf '%s\n' "$pid"
}

port_in_use() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Sends a Kafka Metadata request (v4, no topics) and succeeds if the broker
# answers with at least one live broker.
metadata_ok() {
    local bytes count
    bytes=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/$HOST/$KAFKA_PORT" || exit 1
        # size=23 | api_key=3 api_version=4 correlation_id=1 client_id="kafka.sh"
        # | topics=[] allow_auto_topic_creation=false
        printf '\x00\x00\x00\x17\x00\x03\x00\x04\x00\x00\x00\x01\x00\x08kafka.sh\x00\x00\x00\x00\x00' >&3
        # size, correlation_id, throttle_time_ms, brokers array length
        timeout 5 od -An -v -tu1 -N16 <&3
    ) || return 1
    # shellcheck disable=SC2086
    set -- $bytes
    (($# == 16)) || return 1
    [[ "$5 $6 $7 $8" == "0 0 0 1" ]] || return 1
    count=$(((${13} << 24) | (${14} << 16) | (${15} << 8) | ${16}))
    ((count >= 1))
}

show_log_tail() {
    local f
    for f in "$LOG_DIR/console.log" "$LOG_DIR/server.log"; do
        if [[ -s $f ]]; then
            say "last lines of $f:"
            tail -n 25 "$f" >&2 || true
        fi
    done
}

# Stops process $1: SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds.
terminate() {
    local pid=$1 waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while is_our_broker "$pid"; do
        if ((waited >= KAFKA_STOP_TIMEOUT * 10)); then
            say "broker (pid $pid) still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            waited=0
            while is_our_broker "$pid" && ((waited < 100)); do
                sleep 0.1
                waited=$((waited + 1))
            done
            is_our_broker "$pid" && die "could not stop broker (pid $pid)"
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# --- setup ------------------------------------------------------------------

fetch_libs() {
    local stamp tmp
    stamp=$(cksum <"$SCRIPT_DIR/pom.xml")
    if [[ -f $LIBS_STAMP && $(<"$LIBS_STAMP") == "$stamp" ]]; then
        return 0
    fi
    lock "$CACHE_DIR/.fetch.lock" 8
    if [[ -f $LIBS_STAMP && $(<"$LIBS_STAMP") == "$stamp" ]]; then
        return 0
    fi
    need mvn "install Apache Maven (3.6+) to fetch the Kafka broker jars"
    say "fetching Kafka broker jars with Maven (first run only) ..."
    tmp=$(mktemp -d "$CACHE_DIR/libs.tmp.XXXXXX")
    if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" >"$CACHE_DIR/mvn.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/mvn.log" >&2 || true
        rm -rf "$tmp"
        die "Maven could not fetch the Kafka jars (full output in $CACHE_DIR/mvn.log)"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || {
        rm -rf "$tmp"
        die "Maven finished but no kafka_2.13 jar was copied"
    }
    printf '%s\n' "$stamp" >"$tmp/.fetched"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
}

render_config() {
    local text
    text=$(<"$SCRIPT_DIR/server.properties")
    text=${text//@PORT@/$KAFKA_PORT}
    text=${text//@CONTROLLER_PORT@/$KAFKA_CONTROLLER_PORT}
    text=${text//@LOG_DIRS@/$DATA_DIR}
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        text=${text//PLAINTEXT:\/\/127.0.0.1:$KAFKA_PORT/SASL_SSL://127.0.0.1:$KAFKA_PORT}
        text=${text//inter.broker.listener.name=PLAINTEXT/inter.broker.listener.name=SASL_SSL}
        text=${text//listener.security.protocol.map=PLAINTEXT:PLAINTEXT,/listener.security.protocol.map=SASL_SSL:SASL_SSL,}
        text+=$'\n'"$(sasl_ssl_config)"
    fi
    printf '%s\n' "$text" >"$CONFIG"

    # Broker logs go to files in the run directory, never to the terminal.
    cat >"$LOG4J_CONFIG" <<'EOF'
status = warn
name = tactful-local-kafka

appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3

rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE

logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

sasl_ssl_config() {
    cat <<EOF
############################# SASL_SSL (KAFKA_SECURITY=sasl_ssl) #############################
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$BROKER_USER" password="$BROKER_PASSWORD";
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$(<"$TLS_DIR/store-password")
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS_DIR/truststore.p12
ssl.truststore.password=$(<"$TLS_DIR/store-password")
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
EOF
}

# A CA and a broker certificate for 127.0.0.1 / localhost, made once per run dir.
make_tls() {
    [[ -f $TLS_DIR/broker.p12 && -f $TLS_DIR/truststore.p12 ]] && return 0
    need openssl "install OpenSSL to make the TLS certificates of KAFKA_SECURITY=sasl_ssl"
    need keytool "install a Java 17+ JDK (keytool) for KAFKA_SECURITY=sasl_ssl"
    local tmp password
    tmp=$(mktemp -d "$RUN_DIR/tls.tmp.XXXXXX")
    password=$(openssl rand -hex 16)
    printf '%s\n' "$password" >"$tmp/store-password"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tactful local CA" \
            -keyout "$tmp/ca.key" -out "$tmp/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$tmp/broker.key" -out "$tmp/broker.csr" &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tmp/san.ext" &&
            openssl x509 -req -in "$tmp/broker.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
                -CAcreateserial -days 3650 -extfile "$tmp/san.ext" -out "$tmp/broker.pem" &&
            openssl pkcs12 -export -name broker -in "$tmp/broker.pem" -inkey "$tmp/broker.key" \
                -certfile "$tmp/ca.pem" -passout "pass:$password" -out "$tmp/broker.p12" &&
            keytool -importcert -noprompt -alias ca -file "$tmp/ca.pem" -storetype PKCS12 \
                -keystore "$tmp/truststore.p12" -storepass "$password"
    } >"$tmp/make.log" 2>&1 || {
        cat "$tmp/make.log" >&2 || true
        rm -rf "$tmp"
        die "making the TLS certificates failed"
    }
    rm -f "$tmp/ca.key" "$tmp/broker.key" "$tmp/broker.csr" "$tmp/ca.srl" "$tmp/make.log"
    chmod 600 "$tmp"/*
    chmod 644 "$tmp/ca.pem"
    rm -rf "$TLS_DIR"
    mv "$tmp" "$TLS_DIR"
}

java_base_opts() {
    printf '%s\n' \
        "-Djava.awt.headless=true" \
        "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
        "-Dkafka.logs.dir=$LOG_DIR" \
        "-cp" "$LIBS_DIR/*"
}

format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    local opts
    mapfile -t opts < <(java_base_opts)
    local scram=()
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        scram=(--add-scram "SCRAM-SHA-512=[name=$BROKER_USER,password=$BROKER_PASSWORD]"
            --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]")
    fi
    say "formatting KRaft storage in $DATA_DIR"
    if ! java -Xmx256m "${opts[@]}" kafka.tools.StorageTool format \
        --cluster-id "$CLUSTER_ID" --config "$CONFIG" --ignore-formatted "${scram[@]}" \
        >"$LOG_DIR/format.log" 2>&1 </dev/null; then
        cat "$LOG_DIR/format.log" >&2 || true
        die "formatting the Kafka storage failed"
    fi
}

launch() {
    local opts heap launcher=() waited=0
    mapfile -t opts < <(java_base_opts)
    read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid) # own session: a Ctrl-C in the caller's terminal does not reach it
    else
        launcher=(nohup)
    fi
    rm -f "$PID_FILE"
    # The launched shell records its own pid and then becomes the JVM.
    "${launcher[@]}" bash -c 'printf "%s\n" "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$PID_FILE" \
        java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        "${opts[@]}" kafka.Kafka "$CONFIG" \
        </dev/null >>"$LOG_DIR/console.log" 2>&1 8>&- 9>&- &
    while [[ ! -s $PID_FILE ]]; do
        ((waited < 100)) || die "broker process did not start (see $LOG_DIR/console.log)"
        sleep 0.1
        waited=$((waited + 1))
    done
}

# sasl_ssl: the port completes a TLS handshake under our CA and the broker has
# logged its start since it was launched (a Metadata request needs a SASL login).
started_count() {
    grep -c 'Kafka Server started' "$LOG_DIR/server.log" 2>/dev/null || true
}
tls_ready() {
    local count
    count=$(started_count)
    ((${count:-0} > ${STARTS_BEFORE:-0})) || return 1
    timeout 5 openssl s_client -connect "$ADDRESS" -CAfile "$TLS_DIR/ca.pem" \
        -verify_return_error -brief </dev/null >/dev/null 2>&1
}
broker_ready() {
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then tls_ready; else metadata_ok; fi
}

# Waits until the broker answers metadata requests; fails early if it dies.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ! broker_ready; do
        if ! is_our_broker "$pid"; then
            show_log_tail
            rm -f "$PID_FILE"
            die "broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            say "broker did not answer on $ADDRESS within ${KAFKA_START_TIMEOUT}s; stopping it"
            terminate "$pid"
            rm -f "$PID_FILE"
            die "broker did not become ready"
        fi
        sleep 0.25
    done
}

# --- commands ---------------------------------------------------------------

cmd_start() {
    local pid
    need java "install a Java 17+ runtime to run the local Kafka broker"
    mkdir -p "$RUN_DIR"
    lock "$RUN_DIR/.lock" 9
    if pid=$(running_pid); then
        wait_ready "$pid"
        say "already running (pid $pid)"
        echo "$ADDRESS"
        return 0
    fi
    rm -f "$PID_FILE"
    port_in_use "$KAFKA_PORT" &&
        die "port $KAFKA_PORT on $HOST is in use by another process (set KAFKA_PORT)"
    port_in_use "$KAFKA_CONTROLLER_PORT" &&
        die "port $KAFKA_CONTROLLER_PORT on $HOST is in use by another process (set KAFKA_CONTROLLER_PORT)"
    fetch_libs
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    [[ $KAFKA_SECURITY == plaintext ]] || make_tls
    render_config
    format_storage
    STARTS_BEFORE=$(started_count)
    launch
    pid=$(<"$PID_FILE")
    say "started broker (pid $pid), waiting for $ADDRESS ..."
    wait_ready "$pid"
    say "ready (logs in $LOG_DIR)"
    [[ $KAFKA_SECURITY == plaintext ]] ||
        say "SASL_SSL, SCRAM-SHA-512, user $KAFKA_SASL_USERNAME; CA certificate $TLS_DIR/ca.pem"
    echo "$ADDRESS"
}

cmd_stop() {
    local pid
    if [[ ! -d $RUN_DIR ]]; then
        echo "stopped"
        return 0
    fi
    lock "$RUN_DIR/.lock" 9
    if pid=$(running_pid); then
        say "stopping broker (pid $pid) ..."
        terminate "$pid"
    fi
    rm -f "$PID_FILE"
    echo "stopped"
}

cmd_status() {
    if running_pid >/dev/null; then
        echo "running"
        return 0
    fi
    echo "stopped"
    return 3
}

(($# == 1)) || usage
case $1 in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) usage ;;
esac
