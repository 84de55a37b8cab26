"""Django integration: the session engine `qsess.django.backend`, middleware, devices, mirror model, admin."""
