#!/usr/bin/env bash
# Makes sure the services kurir's tests use run on their standard local ports:
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust on loopback, database "test")
#   Redis      on 127.0.0.1:6379 (no persistence: it never holds the only copy of anything)
# Starts them when installed but stopped; installs them (Debian packages postgresql and
# redis-server) when missing. Idempotent: does nothing when both already answer.
# Called by .ci/run before the tests and by `make services`.
set -euo pipefail

log() { echo "services: $*"; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		log "apt-get not found: install $* yourself"
		return 1
	fi
	log "installing $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

wait_for() { # wait_for DESCRIPTION COMMAND...: poll up to 30 s
	local what=$1
	shift
	for _ in $(seq 60); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	log "$what did not come up"
	return 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
pg_sql() { psql -w -h 127.0.0.1 -U postgres -d postgres -tAc "$1"; }

postgres() {
	if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		apt_install postgresql postgresql-client
	fi
	if ! pg_up; then
		if [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
			version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
			log "creating PostgreSQL $version cluster main"
			as_root pg_createcluster "$version" main
		fi
		for version in $(ls /etc/postgresql); do
			if [ -d "/etc/postgresql/$version/main" ]; then
				log "starting PostgreSQL $version"
				as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
			fi
		done
		wait_for "PostgreSQL" pg_up
	fi
	if ! pg_sql "SELECT 1" >/dev/null 2>&1; then
		# a fresh Debian cluster asks for passwords on TCP: let local test clients in
		for hba in /etc/postgresql/*/main/pg_hba.conf; do
			log "allowing trust authentication on loopback in $hba (test machine)"
			as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
		done
		for version in $(ls /etc/postgresql); do
			as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
		done
		wait_for "PostgreSQL (trust on loopback)" pg_sql "SELECT 1"
	fi
	if [ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]; then
		log "creating database test"
		pg_sql "CREATE DATABASE test" >/dev/null
	fi
	log "PostgreSQL: $(pg_isready -h 127.0.0.1 -p 5432)"
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

redis() {
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-server redis-tools
	fi
	if ! redis_up; then
		log "starting Redis"
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
		wait_for "Redis" redis_up
	fi
	log "Redis: $(redis-cli -h 127.0.0.1 -p 6379 ping)"
}

postgres
redis
