"""Several servers as one Ember: membership (``nodes``) today; leases, placement and
forwarding as they come."""
