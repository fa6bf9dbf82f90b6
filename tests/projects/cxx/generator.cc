// A C++20 coroutine (a generator): clang leaves it to LLVM's coroutine
// passes, which tierjit runs before tiering (see ir::normalize).
#include <coroutine>

namespace {
struct Generator {
  struct promise_type {
    long value = 0;
    Generator get_return_object() {
      return Generator{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(long v) {
      value = v;
      return {};
    }
    void return_void() {}
    void unhandled_exception() {}
  };
  std::coroutine_handle<promise_type> handle;
  ~Generator() {
    if (handle) handle.destroy();
  }
};

Generator squares(int n) {
  for (int i = 0; i < n; i++) co_yield long(i) * i;
}
} // namespace

long coroutine_sum(int rounds) {
  long sum = 0;
  for (int r = 0; r < rounds; r++) {
    Generator g = squares(100);
    for (g.handle.resume(); !g.handle.done(); g.handle.resume()) sum += g.handle.promise().value;
  }
  return sum;
}
