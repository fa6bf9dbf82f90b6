-: /tmp/tierjit-frontend-flags-5045/job.c \
  /tmp/tierjit-frontend-flags-5045/k.h
