#!/usr/bin/env bash
# bench/account-rule.sh HERO CTA NAV BLOG: the benchmark's account rule file (Acme Corp on 127.0.0.0/8, five
# actions on the four selectors given), on standard output. Used by bench/run.sh and bench/profile.sh.
set -euo pipefail
cat <<EOF
[account]
domain = "acme.example"
name = "Acme Corp"
networks = ["127.0.0.0/8"]

[[personalization]]
id = "bench"
tier = "firmographic"

[[personalization.action]]
select = '$1'
set_text = "Spend control for {{ company.name }}"

[[personalization.action]]
select = '$2'
set_attribute = { name = "href", value = "/docs?account={{ account.domain }}" }

[[personalization.action]]
select = '$2'
add_class = "abm"

[[personalization.action]]
select = '$3'
append = { text = " · for {{ company.name }}" }

[[personalization.action]]
select = '$4'
set_text = "{{ company.name }} news"
EOF
