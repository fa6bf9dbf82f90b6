/* C in a C++ job: calls back into C++ that throws through it, which the
   C++ caller catches. Natively this C is compiled without -fexceptions
   and works because its `nounwind` stays in its own object; tierjit
   links the job into one module, so it compiles C with -fexceptions when
   the job has C++. */
typedef void (*visit_fn)(int);

__attribute__((noinline)) int visit_all(visit_fn visit, int n) {
  int visited = 0;
  for (int i = 0; i < n; i++) {
    visit(i);
    visited++;
  }
  return visited;
}
