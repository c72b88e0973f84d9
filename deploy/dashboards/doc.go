// Package dashboards ships a Grafana dashboard (wasmpod.json: pod overview, per-module
// latency, errors and restarts, cluster and elections, work queue, scatter/gather) and
// Prometheus alerting rules (alerts.yml, with promtool unit tests in alerts_test.yml) for the
// metrics every wasmpod host serves on its admin listener at /metrics. The package's test
// checks them against a real host scraped by a real Prometheus.
package dashboards
