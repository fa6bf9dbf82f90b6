-: /tmp/tierjit-frontend-flags-1767/job.c \
  /tmp/tierjit-frontend-flags-1767/k.h
