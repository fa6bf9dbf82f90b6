-: /tmp/tierjit-frontend-flags-30671/job.c \
  /tmp/tierjit-frontend-flags-30671/k.h
