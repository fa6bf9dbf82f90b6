-: /tmp/tierjit-frontend-flags-24548/job.c \
  /tmp/tierjit-frontend-flags-24548/k.h
