-: /tmp/tierjit-frontend-flags-22860/job.c \
  /tmp/tierjit-frontend-flags-22860/k.h
