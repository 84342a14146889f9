// Runtime layer: persistent thread pool (see thread_pool.h).
#include "runtime/thread_pool.h"

#include <atomic>
#include <chrono>
#include <stdexcept>

namespace eb {

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

int ThreadPool::num_threads() const {
  std::lock_guard<std::mutex> lock(run_mutex_);
  return num_threads_;
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (n == num_threads_ && static_cast<int>(workers_.size()) == n - 1) return;
  stop_workers();
  num_threads_ = n;
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

void ThreadPool::run(int n, const std::function<void(int)>& fn) {
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  if (n > num_threads_) n = num_threads_;
  if (n <= 1) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_threads_ = n;
    pending_ = n - 1;
    ++generation_;
  }
  wake_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int index, unsigned long seen) {
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    int threads = 0;
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
      job = job_;
      threads = job_threads_;
    }
    if (job != nullptr && index < threads) (*job)(index);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (job != nullptr && index < threads && --pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace eb
