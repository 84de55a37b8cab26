"""The qsess example project: log in, see your devices, log one out, watch it leave the admin."""
