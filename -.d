-: /tmp/tierjit-frontend-flags-25696/job.c \
  /tmp/tierjit-frontend-flags-25696/k.h
