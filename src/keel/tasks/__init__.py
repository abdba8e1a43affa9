"""Background work: email delivery through Celery, or inside the web process when there is no broker."""
