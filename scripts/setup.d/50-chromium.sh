# Headless Chromium, driven by query's GraphiQL browser test (chromedp).
install_debian_packages chromium
