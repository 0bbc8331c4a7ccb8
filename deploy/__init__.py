"""Deployment files of tollgate and the offline checks that keep them true to the code."""
