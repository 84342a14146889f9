// Runtime layer: persistent thread pool (see thread_pool.h).
#include "runtime/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <utility>

namespace eb {
namespace {

// True on a thread while it runs parts of a job: a part that asks for threads
// itself runs its parts inline (the pool is busy with the enclosing job, and
// run_mutex_ is not recursive).
thread_local bool t_in_job = false;

struct InJob {
  InJob() { t_in_job = true; }
  ~InJob() { t_in_job = false; }
  InJob(const InJob&) = delete;
  InJob& operator=(const InJob&) = delete;
};

}  // namespace

int default_num_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() { set_num_threads(default_num_threads()); }

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (n == num_threads_.load(std::memory_order_relaxed) && static_cast<int>(workers_.size()) == n - 1) return;
  stop_workers();
  num_threads_.store(n, std::memory_order_relaxed);
  start_workers(n - 1);
}

void ThreadPool::start_workers(int count) {
  unsigned long generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = false;
    generation = generation_;
  }
  // Each worker starts from the generation current now, so a job posted
  // before it first runs is not missed.
  for (int i = 0; i < count; ++i) workers_.emplace_back(&ThreadPool::worker_loop, this, i + 1, generation);
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    ++generation_;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

// Parts first, first + job_threads_, ...: exactly job_parts_ in all, one per
// thread unless the pool shrank after the caller split its work.
void ThreadPool::run_parts(int first) noexcept {
  InJob in_job;
  try {
    for (int part = first; part < job_parts_; part += job_threads_) (*job_)(part);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run(int n, const std::function<void(int)>& fn) {
  if (n <= 1 || t_in_job) {
    for (int part = 0; part < n; ++part) fn(part);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  const int threads = std::min(n, num_threads_.load(std::memory_order_relaxed));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_parts_ = n;
    job_threads_ = threads;
    pending_ = threads - 1;
    error_ = nullptr;
    if (threads > 1) ++generation_;
  }
  if (threads > 1) wake_.notify_all();
  // Never leaves before the workers are done: they hold a pointer to fn.
  run_parts(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::worker_loop(int index, unsigned long seen) {
  for (;;) {
    bool mine = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Spin (unlocked) for a short while first: a new job usually follows
      // soon, and a condition-variable wake-up costs tens of microseconds.
      if (generation_ == seen && !stop_) {
        lock.unlock();
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        while (generation_.load(std::memory_order_acquire) == seen &&
               std::chrono::steady_clock::now() < until)
          std::this_thread::yield();
        lock.lock();
      }
      wake_.wait(lock, [&] { return generation_ != seen || stop_; });
      if (stop_) return;
      seen = generation_;
      mine = job_ != nullptr && index < job_threads_;
    }
    if (!mine) continue;
    run_parts(index);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--pending_ == 0) done_.notify_one();
  }
}

}  // namespace eb
