"""Asynchronous batch prediction jobs (REST ``/v1/jobs``), run by Celery workers.

A job passes the same governed pipeline as a synchronous prediction when it
is accepted (authentication, the ``jobs`` scope, policy, one quota
reservation for all its instances, validation of every instance, audit); the
worker then runs it in chunks, records progress after each chunk, audits each
chunk's inputs and predictions, and refunds whatever was never run.
"""
