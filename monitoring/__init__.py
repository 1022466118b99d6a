"""Post-market supervision: live statistics without raw inputs, drift and oversight monitors.

EU AI Act Art. 72 asks the provider of a deployed model to keep watching it.
The gateway keeps only keyed digests of inputs, so monitoring works from
counts gathered in the request path (``monitoring.live``), flushed per window
to the database outside the request (``services.live_stats``), and judged on
a Celery beat schedule against the ``monitoring`` rules of the versioned
policy documents (``services.monitors``).
"""
