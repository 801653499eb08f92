# Headless Chromium: query's GraphiQL browser test (chromedp) and the
# dashboard pages' screenshot tests (query/dashboard).
install_debian_packages chromium
