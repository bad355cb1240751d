"""The web console: pages served by the API server at ``/console`` (``routes``), built from
the files in ``static/`` with no build step (vendored libraries in ``static/vendor``)."""
