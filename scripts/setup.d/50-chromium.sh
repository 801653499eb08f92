# Headless Chromium: query's GraphiQL browser test (chromedp) and the
# dashboard pages' screenshot tests (metrics/dashboard).
install_debian_packages chromium
