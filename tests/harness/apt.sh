# Sourced by the install scripts: apt helpers that never name a package registry's host.
# Extra apt sources (deb-src, other suites) take their URI from the sources this machine is
# already configured with.

apt_update_once() {
  if [ "${LUCID_APT_UPDATED:-0}" != 1 ]; then
    apt-get update -qq >/dev/null 2>&1 || apt-get update -qq >/dev/null
    export LUCID_APT_UPDATED=1
  fi
}

# Adds deb-src beside every Debian suite this machine already uses (same URIs), so
# `apt-get source` finds the current source of a package, security updates included.
apt_enable_source_packages() {
  local file=/etc/apt/sources.list.d/lucid-deb-src.sources uri suite
  if [ ! -f "$file" ]; then
    : >"$file.tmp"
    while read -r uri suite; do
      printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' \
        "$uri" "$suite" >>"$file.tmp"
    done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null |
      awk '$3 == "deb" && $2 ~ /^bookworm/ { print $1, $2 }' | sort -u)
    [ -s "$file.tmp" ] || { rm -f "$file.tmp"; echo "no configured apt source for bookworm" >&2; return 1; }
    mv "$file.tmp" "$file"
    rm -f /etc/apt/sources.list.d/lucid-bookworm-src.sources
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
