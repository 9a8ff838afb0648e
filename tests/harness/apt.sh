# Sourced by the install scripts: apt helpers that never name a package registry's host.
# Extra apt sources (deb-src, other suites) take their URI from the sources this machine is
# already configured with.

# Prints the URI this machine uses for the Debian suite $1 (e.g. bookworm, bookworm-security).
apt_configured_uri() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null |
    awk -v suite="$1" '$2 == suite && $3 == "deb" { print $1; exit }'
}

apt_update_once() {
  if [ "${LUCID_APT_UPDATED:-0}" != 1 ]; then
    apt-get update -qq >/dev/null 2>&1 || apt-get update -qq >/dev/null
    export LUCID_APT_UPDATED=1
  fi
}

# Adds deb-src for bookworm (same URI as the binary source) so `apt-get source` works.
apt_enable_source_packages() {
  local file=/etc/apt/sources.list.d/lucid-bookworm-src.sources uri
  if [ ! -f "$file" ]; then
    uri="$(apt_configured_uri bookworm)"
    [ -n "$uri" ] || { echo "no configured apt source for bookworm" >&2; return 1; }
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" >"$file"
    LUCID_APT_UPDATED=0
  fi
  apt_update_once
}

# Installs the packages not installed yet (architecture-qualified names work).
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update_once
  printf '[apt] install %s\n' "${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
