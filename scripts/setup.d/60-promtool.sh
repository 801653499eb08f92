# promtool (Debian's prometheus package): tests run `promtool check metrics`
# on /metrics and `promtool check rules` / `promtool test rules` on deploy/.
install_debian_packages prometheus
