"""Source plugins, one module per monitoring tool; importing the package registers them."""

from sources import alertmanager as alertmanager
from sources import generic as generic
from sources import pagerduty as pagerduty
from sources import prometheus as prometheus
