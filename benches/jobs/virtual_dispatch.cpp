// Virtual calls in a hot loop: a particle system whose particles are of
// three kinds behind one interface, nine in ten of them one kind. A
// native build cannot see through the call; profile-guided code can
// promote the dominant target and inline it.
// Usage: virtual_dispatch [STEPS] (default 40000), 4096 particles.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

struct Particle {
  double x = 0, v = 1;
  virtual ~Particle() = default;
  virtual void step(double dt) = 0;
};
struct Drifting final : Particle {
  void step(double dt) override { x += v * dt; }
};
struct Damped final : Particle {
  void step(double dt) override {
    v *= 0.999;
    x += v * dt;
  }
};
struct Bouncing final : Particle {
  void step(double dt) override {
    x += v * dt;
    if (x > 10 || x < -10) v = -v;
  }
};

int main(int argc, char **argv) {
  int steps = argc > 1 ? std::atoi(argv[1]) : 40000;
  std::vector<std::unique_ptr<Particle>> ps;
  for (int i = 0; i < 4096; i++) {
    int kind = (i * 7919) % 10;
    if (kind < 9) ps.push_back(std::make_unique<Drifting>());
    else if (kind == 9 && i % 2) ps.push_back(std::make_unique<Damped>());
    else ps.push_back(std::make_unique<Bouncing>());
    ps.back()->v = 0.5 + (i % 13) * 0.1;
  }
  for (int s = 0; s < steps; s++)
    for (auto &p : ps) p->step(0.01);
  double sum = 0;
  for (auto &p : ps) sum += p->x;
  std::printf("%.6f\n", sum);
  return 0;
}
