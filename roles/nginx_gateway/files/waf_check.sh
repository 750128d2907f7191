#!/bin/sh
# validate: for the WAF's rules file: nginx -t with a minimal configuration that loads the
# ModSecurity module and these rules (the Core Rule Set included), nothing else.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
pid $tmp/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    modsecurity on;
    modsecurity_rules_file $1;
    server { listen 127.0.0.1:9; }
}
CONF
exec nginx -t -q -c "$tmp/nginx.conf"
