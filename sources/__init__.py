"""Source plugins, one module per monitoring tool; importing the package registers them."""

from sources import alertmanager as alertmanager
from sources import datadog as datadog
from sources import generic as generic
from sources import grafana as grafana
from sources import pagerduty as pagerduty
from sources import prometheus as prometheus
