module kernels
  implicit none
contains
  subroutine smooth(a, b, n)
    integer, intent(in) :: n
    real(8), intent(in) :: a(n)
    real(8), intent(out) :: b(n)
    integer :: i
    b(1) = a(1)
    b(n) = a(n)
    do i = 2, n - 1
      b(i) = 0.25d0 * a(i-1) + 0.5d0 * a(i) + 0.25d0 * a(i+1)
    end do
  end subroutine smooth
end module kernels

program stencil
  use kernels
  implicit none
  integer, parameter :: n = 20000
  real(8), allocatable :: a(:), b(:)
  integer :: i, t
  character(len=32) :: arg
  integer :: steps
  steps = 300
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) steps
  end if
  allocate(a(n), b(n))
  do i = 1, n
    a(i) = mod(i, 97) * 0.5d0
  end do
  do t = 1, steps
    call smooth(a, b, n)
    a = b
  end do
  write (*, '(A, F20.6)') 'sum ', sum(a)
  if (steps < 0) stop 3
end program stencil
